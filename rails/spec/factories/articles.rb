FactoryBot.define do
  factory :article do
    user
    title { Faker::Lorem.sentence }
    content { Faker::Lorem.paragraph }
    status { :draft }

    trait :published do
      status { :published }
    end
  end
end
