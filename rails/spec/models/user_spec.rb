require "rails_helper"

RSpec.describe User, type: :model do
  it "is valid with a name and an e-mail address" do
    expect(build(:user)).to be_valid
  end

  it "requires a name" do
    user = build(:user, name: "")
    expect(user).not_to be_valid
    expect(user.errors[:name]).to be_present
  end

  it "requires a well-formed e-mail address" do
    expect(build(:user, email: "")).not_to be_valid
    expect(build(:user, email: "not-an-address")).not_to be_valid
  end

  it "rejects an e-mail address another user has, whatever its case" do
    create(:user, email: "taken@example.com")
    user = build(:user, email: "Taken@Example.com")
    expect(user).not_to be_valid
    expect(user.errors[:email]).to be_present
  end

  it "stores the e-mail address in lower case" do
    expect(create(:user, email: "Mixed@Example.COM").email).to eq "mixed@example.com"
  end

  it "destroys its articles with it" do
    user = create(:user)
    create_list(:article, 2, user: user)
    expect { user.destroy }.to change(Article, :count).by(-2)
  end
end
