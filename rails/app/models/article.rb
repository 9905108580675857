class Article < ApplicationRecord
  belongs_to :user

  enum status: { draft: 0, published: 1 }

  validates :title, presence: true, length: { maximum: 255 }
  validates :content, presence: true

  scope :newest_first, -> { order(created_at: :desc, id: :desc) }
end
